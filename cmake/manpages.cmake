# Man pages from the scdoc sources in docs/man/ (Debian's scdoc package): mqsec(1),
# mqsec.toml(5), libmqrt(3). Built with the default target and installed under
# ${CMAKE_INSTALL_MANDIR} by `cmake --install`. MQSEC_MANPAGES: AUTO (when scdoc is found; the
# default), ON (scdoc required: the packages build with it) or OFF.
set(MQSEC_MANPAGES AUTO CACHE STRING "Build and install the man pages (scdoc): AUTO, ON or OFF")
set_property(CACHE MQSEC_MANPAGES PROPERTY STRINGS AUTO ON OFF)
if(NOT MQSEC_MANPAGES STREQUAL "OFF")
  find_program(SCDOC_EXECUTABLE scdoc)
  if(NOT SCDOC_EXECUTABLE)
    if(MQSEC_MANPAGES STREQUAL "ON")
      message(FATAL_ERROR "MQSEC_MANPAGES=ON needs scdoc (apt-get install scdoc)")
    endif()
    message(STATUS "scdoc not found: the man pages are not built (apt-get install scdoc)")
  else()
    set(_mqsec_man_outputs)
    foreach(_page mqsec.1 mqsec.toml.5 libmqrt.3)
      set(_src ${PROJECT_SOURCE_DIR}/docs/man/${_page}.scd)
      set(_out ${PROJECT_BINARY_DIR}/man/${_page})
      string(REGEX REPLACE ".*\\.([0-9])$" "\\1" _section ${_page})
      add_custom_command(OUTPUT ${_out}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
        COMMAND sh -c "\"$0\" < \"$1\" > \"$2\"" ${SCDOC_EXECUTABLE} ${_src} ${_out}
        DEPENDS ${_src} VERBATIM
        COMMENT "scdoc ${_page}")
      list(APPEND _mqsec_man_outputs ${_out})
      install(FILES ${_out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${_section})
    endforeach()
    add_custom_target(mqsec_manpages ALL DEPENDS ${_mqsec_man_outputs})
    unset(_mqsec_man_outputs)
  endif()
endif()
