# Finds trident's dependencies. Used by the build tree and, installed beside tridentConfig.cmake, by consumers.
# A missing dependency stops configure with the Debian package that provides it.
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

macro(trident_find_io_dependencies)
  find_package(OpenCV QUIET COMPONENTS core imgproc imgcodecs)
  _trident_require(OpenCV_FOUND "OpenCV (core, imgproc, imgcodecs)" "libopencv-dev")
  find_package(PkgConfig QUIET)
  _trident_require(PKG_CONFIG_FOUND "pkg-config (to find matio)" "pkg-config")
  pkg_check_modules(TRIDENT_MATIO QUIET IMPORTED_TARGET matio)
  _trident_require(TRIDENT_MATIO_FOUND "matio (pkg-config matio)" "libmatio-dev")
  find_package(nlohmann_json 3 QUIET)
  _trident_require(nlohmann_json_FOUND "nlohmann_json (find_package(nlohmann_json))" "nlohmann-json3-dev")
  if(NOT TRIDENT_FROM_PACKAGE_CONFIG AND NOT TARGET trident_matio)
    # A plain INTERFACE target (exportable, unlike pkg-config's imported one) that carries matio.
    add_library(trident_matio INTERFACE)
    target_link_libraries(trident_matio INTERFACE PkgConfig::TRIDENT_MATIO)
  endif()
endmacro()
