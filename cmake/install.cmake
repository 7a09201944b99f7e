# cmake --install (GNUInstallDirs; DESTDIR honoured) and the Debian
# package (cpack -G DEB from the build folder). With the default prefix
# /usr/local the config goes to /usr/local/etc/chorus; the package uses
# prefix /usr, so /etc/chorus and /usr/lib/systemd/system.
include(GNUInstallDirs)

set(CHORUS_CONF_DIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/chorus)
configure_file(${CMAKE_SOURCE_DIR}/contrib/systemd/chorusd.service.in
               ${CMAKE_BINARY_DIR}/chorusd.service @ONLY)

install(TARGETS chorusd chorus RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/broker.conf.example
        DESTINATION ${CHORUS_CONF_DIR} RENAME chorusd.conf)
install(FILES ${CMAKE_BINARY_DIR}/chorusd.service
        DESTINATION lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/man/chorusd.8
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${CMAKE_SOURCE_DIR}/man/chorus.1
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CMAKE_SOURCE_DIR}/contrib/bash-completion/chorus
              ${CMAKE_SOURCE_DIR}/contrib/bash-completion/chorusd
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
install(FILES ${CMAKE_SOURCE_DIR}/README.md
              ${CMAKE_SOURCE_DIR}/docs/PROTOCOL.md
              ${CMAKE_SOURCE_DIR}/docs/BROWSER.md
              ${CMAKE_SOURCE_DIR}/docs/AUTH.md
              ${CMAKE_SOURCE_DIR}/client/js/chorus.js
              ${CMAKE_SOURCE_DIR}/broker.conf.example
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---- Debian package ------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME chorus)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Chorus developers <chorus@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "pub/sub broadcast broker over WebSocket with durable replay")
set(CPACK_PACKAGE_DESCRIPTION
    "chorusd fans every published message out to the WebSocket subscribers
of its topic and keeps recent history in SQLite, so that a client that
reconnects replays exactly what it missed. Also the chorus command-line
client.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
# Files under /etc are the administrator's: dpkg keeps their edits.
file(WRITE ${CMAKE_BINARY_DIR}/debian/conffiles
     "/etc/chorus/chorusd.conf\n")
foreach(script postinst prerm postrm)
  configure_file(${CMAKE_SOURCE_DIR}/contrib/debian/${script}
                 ${CMAKE_BINARY_DIR}/debian/${script} COPYONLY)
endforeach()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_BINARY_DIR}/debian/conffiles
    ${CMAKE_BINARY_DIR}/debian/postinst
    ${CMAKE_BINARY_DIR}/debian/prerm
    ${CMAKE_BINARY_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
