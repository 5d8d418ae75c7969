# Installation and the Debian package (CPack). Included from the top-level
# CMakeLists.txt after every target is defined.
#
#   cmake --install build/release --prefix /usr     # a system install from source
#   (cd build/release && cpack)                       # build/release/wacht_<version>-1_<arch>.deb
#
# Paths with the install prefix /usr (the package's):
#   /usr/sbin/wachtd
#   /usr/lib/systemd/system/wachtd.service
#   /usr/lib/sysusers.d/wacht.conf, /usr/lib/tmpfiles.d/wacht.conf
#   /usr/share/man/man5/wacht.toml.5, /usr/share/man/man8/wachtd.8
#   /usr/share/doc/wacht/ (README, CHANGELOG, docs/*.md, examples/ with the Grafana
#                         dashboard and the Prometheus files)
#   /etc/wacht/wacht.toml, /etc/wacht/conf.d/README (never overwritten by cmake --install)
# With any other prefix the config goes to <prefix>/etc/wacht and the unit's
# paths are rewritten to match.

include(GNUInstallDirs)

set(WACHT_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "systemd system unit directory, relative to the install prefix")
set(WACHT_SYSUSERSDIR "lib/sysusers.d" CACHE STRING "sysusers.d directory, relative to the prefix")
set(WACHT_TMPFILESDIR "lib/tmpfiles.d" CACHE STRING "tmpfiles.d directory, relative to the prefix")

install(TARGETS wachtd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})

install(FILES systemd/wacht.sysusers.conf DESTINATION ${WACHT_SYSUSERSDIR} RENAME wacht.conf)
install(FILES systemd/wacht.tmpfiles.conf DESTINATION ${WACHT_TMPFILESDIR} RENAME wacht.conf)
install(FILES docs/man/wachtd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES docs/man/wacht.toml.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES README.md CHANGELOG.md docs/configuration.md docs/operations.md
              docs/performance.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ops/grafana/wacht-dashboard.json DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/grafana)
install(FILES ops/prometheus/prometheus.yml ops/prometheus/wacht-rules.yml
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/prometheus)
# The example configs with their (fake) secret files, which their relative
# password_file/tokens_file/token_file name: without them the installed
# examples would not pass --check-config.
install(DIRECTORY etc/examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/config
        FILES_MATCHING PATTERN "*.toml" PATTERN "README*" REGEX "/secrets/[^/]+$")

# The unit and the config are placed at install time, when the prefix (cmake
# --install --prefix, CPack's /usr) is known:
# - the config directory is /etc/wacht for the prefix /usr, else <prefix>/etc/wacht
#   (an absolute CMAKE_INSTALL_SYSCONFDIR wins);
# - an existing config file is never replaced: an admin's edits survive
#   `cmake --install` (the package's conffiles get dpkg's usual handling);
# - the unit's /usr/sbin/wachtd and /etc/wacht are rewritten for other prefixes.
install(CODE "
  set(_wacht_src \"${CMAKE_CURRENT_SOURCE_DIR}\")
  set(_wacht_bin \"${CMAKE_CURRENT_BINARY_DIR}\")
  set(_wacht_sysconfdir \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(_wacht_sbindir \"${CMAKE_INSTALL_SBINDIR}\")
  set(_wacht_unitdir \"${WACHT_SYSTEMD_UNITDIR}\")
  set(_wacht_docdir \"${CMAKE_INSTALL_DOCDIR}\")
")
install(CODE [[
  if(IS_ABSOLUTE "${_wacht_sysconfdir}")
    set(_wacht_etc "${_wacht_sysconfdir}/wacht")
  elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr" OR CMAKE_INSTALL_PREFIX STREQUAL "/usr/")
    set(_wacht_etc "/etc/wacht")
  else()
    set(_wacht_etc "${CMAKE_INSTALL_PREFIX}/${_wacht_sysconfdir}/wacht")
  endif()
  if(IS_ABSOLUTE "${_wacht_sbindir}")
    set(_wacht_wachtd "${_wacht_sbindir}/wachtd")
  else()
    set(_wacht_wachtd "${CMAKE_INSTALL_PREFIX}/${_wacht_sbindir}/wachtd")
  endif()

  # The unit, with its paths for this prefix.
  file(READ "${_wacht_src}/systemd/wachtd.service" _wacht_unit)
  string(REPLACE "/usr/sbin/wachtd" "${_wacht_wachtd}" _wacht_unit "${_wacht_unit}")
  string(REPLACE "/etc/wacht/" "${_wacht_etc}/" _wacht_unit "${_wacht_unit}")
  string(REPLACE "file:///usr/share/doc/wacht/" "file://${CMAKE_INSTALL_PREFIX}/${_wacht_docdir}/"
         _wacht_unit "${_wacht_unit}")
  file(MAKE_DIRECTORY "${_wacht_bin}/install-staging")
  file(WRITE "${_wacht_bin}/install-staging/wachtd.service" "${_wacht_unit}")
  file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/${_wacht_unitdir}" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES "${_wacht_bin}/install-staging/wachtd.service")

  # The config: readable by the wacht user, never overwritten.
  foreach(_wacht_pair "wacht.toml|etc/wacht.toml" "conf.d/README|etc/conf.d/README")
    string(REPLACE "|" ";" _wacht_pair "${_wacht_pair}")
    list(GET _wacht_pair 0 _wacht_rel)
    list(GET _wacht_pair 1 _wacht_from)
    get_filename_component(_wacht_dir "${_wacht_etc}/${_wacht_rel}" DIRECTORY)
    if(EXISTS "$ENV{DESTDIR}${_wacht_etc}/${_wacht_rel}")
      message(STATUS "Keeping existing: $ENV{DESTDIR}${_wacht_etc}/${_wacht_rel}")
    else()
      file(INSTALL DESTINATION "${_wacht_dir}" TYPE FILE
           PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
           DIR_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                           WORLD_READ WORLD_EXECUTE
           FILES "${_wacht_src}/${_wacht_from}")
    endif()
  endforeach()

  if("$ENV{DESTDIR}" STREQUAL "" AND NOT CMAKE_INSTALL_PREFIX MATCHES "_CPack_Packages")
    message(STATUS "wacht installed. Next, as root (docs/operations.md):
      systemd-sysusers wacht.conf && systemd-tmpfiles --create wacht.conf
      systemctl daemon-reload
      ${_wacht_wachtd} --check-config --config ${_wacht_etc}/wacht.toml
      systemctl enable --now wachtd")
  endif()
]])

# --- Debian package ---------------------------------------------------------
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "wacht")
set(CPACK_PACKAGE_VENDOR "KSM Kommunalservice Mecklenburg")
set(CPACK_PACKAGE_CONTACT "wacht maintainers <wacht@example.org>")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "infrastructure monitoring daemon with durable alerting")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
    "wachtd probes HTTP(S), TCP (with TLS and dialogues), ICMP, DNS and Nagios\n"
    "plugins from one event loop, exports the results as Prometheus metrics\n"
    "under blackbox_exporter's names and notifies the on-call staff of each\n"
    "administration through a durable outbox.")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
# A stripped wachtd (2 MB instead of 58): for a symbolised core dump of a
# watchdog abort, run the unstripped build/<dir>/wachtd against the core.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_NAME "wacht")
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "admin")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "monitoring-plugins-basic, prometheus, grafana")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_CURRENT_SOURCE_DIR}/packaging/deb/conffiles"
    "${CMAKE_CURRENT_SOURCE_DIR}/packaging/deb/postinst"
    "${CMAKE_CURRENT_SOURCE_DIR}/packaging/deb/prerm"
    "${CMAKE_CURRENT_SOURCE_DIR}/packaging/deb/postrm")
# Only what install() places goes into the package; the build tree stays out.
set(CPACK_SOURCE_GENERATOR "")
include(CPack)
