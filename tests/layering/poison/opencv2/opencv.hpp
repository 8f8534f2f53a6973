// Stands in for <opencv2/opencv.hpp> where trident::trident must build without OpenCV (tests/CMakeLists.txt, consumer.core_only).
#error "trident::trident needs no OpenCV, yet <opencv2/opencv.hpp> was included"
