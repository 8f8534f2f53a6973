// Stands in for <opencv2/imgproc.hpp> where trident::trident must build without OpenCV (tests/CMakeLists.txt, consumer.core_only).
#error "trident::trident needs no OpenCV, yet <opencv2/imgproc.hpp> was included"
