# Finds trident's dependencies for its own build tree (the installed package finds them in tridentConfig.cmake).
# The core's dependencies are required; a missing one stops configure with the Debian package that provides it.
# Each io component's dependency is looked for only when its option (TRIDENT_WITH_VISION / _MAT / _JSON) is not
# OFF: AUTO provides the component when the dependency is found, ON also stops configure when it is not. The same
# for TRIDENT_WITH_FAISS (trident::faiss: approximate gallery search, search/faiss_index.hpp).
include_guard(GLOBAL)

macro(_trident_require found what package)
  if(NOT ${found})
    message(FATAL_ERROR
      "trident: ${what} was not found. On Debian 12 install it with\n"
      "    sudo apt-get install ${package}\n"
      "or run cmake/install-deps.sh (for another LibTorch, pass -DCMAKE_PREFIX_PATH=<its cmake prefix>).")
  endif()
endmacro()

macro(trident_find_core_dependencies)
  find_package(Torch QUIET)
  _trident_require(Torch_FOUND "LibTorch (find_package(Torch))" "libtorch-dev")
  find_package(Boost 1.66 QUIET)
  _trident_require(Boost_FOUND "Boost (for Boost.Hana)" "libboost-dev")
  if(NOT TARGET Boost::headers)
    add_library(Boost::headers INTERFACE IMPORTED)
    set_target_properties(Boost::headers PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${Boost_INCLUDE_DIRS}")
  endif()
  find_path(TRIDENT_HANA_INCLUDE boost/hana.hpp HINTS ${Boost_INCLUDE_DIRS})
  _trident_require(TRIDENT_HANA_INCLUDE "Boost.Hana (boost/hana.hpp)" "libboost-dev")
  find_package(fmt QUIET)
  _trident_require(fmt_FOUND "fmt (find_package(fmt))" "libfmt-dev")
endmacro()

# _trident_component(VISION found "what" "package"): sets TRIDENT_HAVE_VISION from the option and `found`.
macro(_trident_component name found what package)
  set(TRIDENT_HAVE_${name} OFF)
  if(TRIDENT_WITH_${name} STREQUAL "ON" OR TRIDENT_WITH_${name} STREQUAL "TRUE")
    if(NOT ${found})
      message(FATAL_ERROR
        "trident: TRIDENT_WITH_${name}=ON but ${what} was not found. On Debian 12: sudo apt-get install ${package}; "
        "or configure with -DTRIDENT_WITH_${name}=AUTO (provide trident::${name} only where it is found) or OFF.")
    endif()
    set(TRIDENT_HAVE_${name} ON)
  elseif(${found})
    set(TRIDENT_HAVE_${name} ON)
  elseif(NOT TRIDENT_WITH_${name} MATCHES "^(OFF|FALSE|NO|0)$")
    message(STATUS "trident: ${what} not found: trident::${name} is not provided (install ${package} for it)")
  endif()
endmacro()

macro(_trident_off name)
  string(TOUPPER "${TRIDENT_WITH_${name}}" TRIDENT_WITH_${name})
  set(_trident_look_${name} ON)
  if(TRIDENT_WITH_${name} MATCHES "^(OFF|FALSE|NO|0)$")
    set(_trident_look_${name} OFF)
  endif()
endmacro()

macro(trident_find_io_dependencies)
  foreach(_n IN ITEMS VISION MAT JSON)
    _trident_off(${_n})
  endforeach()
  set(_trident_vision_found OFF)
  if(_trident_look_VISION)
    find_package(OpenCV QUIET COMPONENTS core imgproc imgcodecs)
    set(_trident_vision_found ${OpenCV_FOUND})
  endif()
  _trident_component(VISION _trident_vision_found "OpenCV (core, imgproc, imgcodecs)" "libopencv-dev")

  set(_trident_mat_found OFF)
  if(_trident_look_MAT)
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
      pkg_check_modules(TRIDENT_MATIO QUIET IMPORTED_TARGET matio)
      set(_trident_mat_found ${TRIDENT_MATIO_FOUND})
    endif()
  endif()
  _trident_component(MAT _trident_mat_found "matio (pkg-config matio)" "libmatio-dev pkg-config")
  if(TRIDENT_HAVE_MAT AND NOT TARGET trident_matio)
    # A plain INTERFACE target (exportable, unlike pkg-config's imported one) that carries matio.
    add_library(trident_matio INTERFACE)
    target_link_libraries(trident_matio INTERFACE PkgConfig::TRIDENT_MATIO)
    set_target_properties(trident_matio PROPERTIES EXPORT_NAME matio)
  endif()

  set(_trident_json_found OFF)
  if(_trident_look_JSON)
    find_package(nlohmann_json 3 QUIET)
    set(_trident_json_found ${nlohmann_json_FOUND})
  endif()
  _trident_component(JSON _trident_json_found "nlohmann_json (find_package(nlohmann_json))" "nlohmann-json3-dev")
endmacro()

# trident::faiss (search/faiss_index.hpp): FAISS's CMake package (Debian: libfaiss-dev, target `faiss`).
macro(trident_find_faiss_dependency)
  _trident_off(FAISS)
  set(_trident_faiss_found OFF)
  if(_trident_look_FAISS)
    # Debian's faiss-config.cmake names OpenMP::OpenMP_CXX without finding it.
    find_package(OpenMP QUIET COMPONENTS CXX)
    find_package(faiss QUIET)
    if(faiss_FOUND AND TARGET faiss)
      set(_trident_faiss_found ON)
    endif()
  endif()
  _trident_component(FAISS _trident_faiss_found "FAISS (find_package(faiss))" "libfaiss-dev")
endmacro()
