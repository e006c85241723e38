# FindProton: Qpid Proton C++ (Debian 12: libqpid-proton-cpp12-dev).
#
# Debian 12's pkg-config file for libqpid-proton-cpp requires libqpid-proton-core and
# libqpid-proton-proactor, whose .pc files are not shipped, and there is no CMake config file;
# so the header and the library are found directly. libqpid-proton-cpp.so carries its own
# dependencies on the core and proactor libraries (DT_NEEDED).
#
# Result: the imported target Proton::cpp (SYSTEM include directory), Proton_FOUND,
# Proton_VERSION (from proton/version.h), Proton_CPP_LIBRARY, Proton_INCLUDE_DIR.
# Hints: Proton_ROOT or CMAKE_PREFIX_PATH.

find_path(Proton_INCLUDE_DIR NAMES proton/container.hpp)
find_library(Proton_CPP_LIBRARY NAMES qpid-proton-cpp)

if(Proton_INCLUDE_DIR AND EXISTS "${Proton_INCLUDE_DIR}/proton/version.h")
  file(STRINGS "${Proton_INCLUDE_DIR}/proton/version.h" _proton_version_lines
    REGEX "^#define PN_VERSION_(MAJOR|MINOR|POINT) [0-9]+")
  foreach(_part MAJOR MINOR POINT)
    string(REGEX REPLACE ".*#define PN_VERSION_${_part} ([0-9]+).*" "\\1" _proton_${_part}
      "${_proton_version_lines}")
  endforeach()
  set(Proton_VERSION "${_proton_MAJOR}.${_proton_MINOR}.${_proton_POINT}")
  unset(_proton_version_lines)
  unset(_proton_MAJOR)
  unset(_proton_MINOR)
  unset(_proton_POINT)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Proton
  REQUIRED_VARS Proton_CPP_LIBRARY Proton_INCLUDE_DIR
  VERSION_VAR Proton_VERSION
  REASON_FAILURE_MESSAGE "install libqpid-proton-cpp12-dev (scripts/deps.sh)")

if(Proton_FOUND AND NOT TARGET Proton::cpp)
  add_library(Proton::cpp UNKNOWN IMPORTED)
  set_target_properties(Proton::cpp PROPERTIES
    IMPORTED_LOCATION "${Proton_CPP_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${Proton_INCLUDE_DIR}"
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${Proton_INCLUDE_DIR}")
endif()
mark_as_advanced(Proton_INCLUDE_DIR Proton_CPP_LIBRARY)
