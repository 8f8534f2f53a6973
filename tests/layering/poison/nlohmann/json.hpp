// Stands in for <nlohmann/json.hpp> where trident::trident must build without nlohmann_json (tests/CMakeLists.txt, consumer.core_only).
#error "trident::trident needs no nlohmann_json, yet <nlohmann/json.hpp> was included"
