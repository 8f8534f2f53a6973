// Stands in for <matio.h> where trident::trident must build without matio (tests/CMakeLists.txt, consumer.core_only).
#error "trident::trident needs no matio, yet <matio.h> was included"
