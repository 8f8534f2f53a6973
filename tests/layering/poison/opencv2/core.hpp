// Stands in for <opencv2/core.hpp> where trident::trident must build without OpenCV (tests/CMakeLists.txt, consumer.core_only).
#error "trident::trident needs no OpenCV, yet <opencv2/core.hpp> was included"
