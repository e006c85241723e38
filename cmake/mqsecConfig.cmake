# find_package(mqsec) -> imported target mqsec::mqrt (libmqrt with mq.h and mqsec/*.hpp).
include("${CMAKE_CURRENT_LIST_DIR}/mqsecTargets.cmake")
