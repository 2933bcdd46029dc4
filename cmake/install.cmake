# tern as an installed library: `cmake --install` puts the framework's public
# headers, its static libraries and a CMake package (find_package(tern 0.2),
# tern::tern) and a pkg-config file under the prefix; the gateway, tern-call
# and the `tern` tool (tern new) beside them. CPack makes the Debian packages
# tern-dev and tern-gateway from the same rules (scripts/package).
include(CMakePackageConfigHelpers)

set(TERN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tern)

# Headers: the framework's public ones (framework/src's stay private), and
# the transport's that they include. tests/package checks that these are
# enough by building against the installed copy alone.
install(DIRECTORY framework/include/tern DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
install(FILES transport/include/tern/rpc_error.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tern COMPONENT dev)
foreach(h byte_buffer codec connection connection_options control endpoint frame_decoder function_ref
          json log_limit msgpack_codec msgpack_reader nestjs_codec packet server task_group tls
          unique_function utf8)
  install(FILES transport/include/tern/transport/${h}.hpp
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tern/transport COMPONENT dev)
endforeach()

install(TARGETS tern tern_transport tern_http tern_asio tern_msgpack tern_malloc
        EXPORT tern-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(EXPORT tern-targets NAMESPACE tern:: DESTINATION ${TERN_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(cmake/tern-config.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/tern-config.cmake
                              INSTALL_DESTINATION ${TERN_CMAKE_DIR})
# 0.x: a minor version may break the API, so 0.2 accepts 0.2.* only.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/tern-config-version.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/tern-config.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/tern-config-version.cmake
        DESTINATION ${TERN_CMAKE_DIR} COMPONENT dev)

# pkg-config: the same definitions as tern::tern carries (they change inline
# Asio and msgpack-c code, so a user's code must see what the library saw).
set(TERN_PC_CFLAGS "")
foreach(t tern_asio tern_msgpack)
  get_target_property(defs ${t} INTERFACE_COMPILE_DEFINITIONS)
  foreach(d ${defs})
    string(APPEND TERN_PC_CFLAGS " -D${d}")
  endforeach()
endforeach()
configure_file(cmake/tern.pc.in ${CMAKE_CURRENT_BINARY_DIR}/tern.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/tern.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# Tools for service authors: `tern new` and its templates, tern-call.
set(TERN_VERSION ${PROJECT_VERSION})
configure_file(tools/tern.in ${CMAKE_CURRENT_BINARY_DIR}/tools/tern @ONLY
               FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                WORLD_READ WORLD_EXECUTE)
install(PROGRAMS ${CMAKE_CURRENT_BINARY_DIR}/tools/tern DESTINATION ${CMAKE_INSTALL_BINDIR}
        COMPONENT dev)
install(DIRECTORY tools/templates/ DESTINATION ${CMAKE_INSTALL_DATADIR}/tern/templates
        COMPONENT dev)
install(PROGRAMS $<TARGET_FILE:tern_call> DESTINATION ${CMAKE_INSTALL_BINDIR}
        RENAME tern-call COMPONENT dev)

# The gateway: binary, default config, its environment file, a systemd unit.
install(PROGRAMS $<TARGET_FILE:gateway> DESTINATION ${CMAKE_INSTALL_BINDIR}
        RENAME tern-gateway COMPONENT gateway)
install(FILES gateway/routes.json DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/tern
        RENAME gateway.json COMPONENT gateway)
# 0600: it is where TERN_JWT_SECRET goes (systemd reads it as root).
install(FILES packaging/tern-gateway.default DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/default
        RENAME tern-gateway PERMISSIONS OWNER_READ OWNER_WRITE COMPONENT gateway)
install(FILES packaging/tern-gateway.service DESTINATION /lib/systemd/system COMPONENT gateway)
install(FILES docs/gateway.md docs/observability.md
        DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/tern-gateway COMPONENT gateway)
install(FILES docs/guide.md docs/protocol.md
        DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/tern-dev COMPONENT dev)

# ---- Debian packages (cpack -G DEB; scripts/package) ----
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME tern)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "tern developers <tern@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL dev gateway)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_STRIP_FILES TRUE)
# dpkg-shlibdeps writes the shared libraries' Depends of each binary.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME tern-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# The headers tern's include, the libraries its static ones need at link
# time, doctest for `tern new`'s test, pkg-config for tern.pc.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libasio-dev, libmsgpack-cxx-dev, libspdlog-dev, prometheus-cpp-dev, libssl-dev, libc-ares-dev, libre2-dev, libmimalloc-dev, doctest-dev, pkg-config")
set(CPACK_DEBIAN_DEV_PACKAGE_RECOMMENDS "cmake (>= 3.25), g++ (>= 4:12)")
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "tern: NestJS's microservices model for C++20 (development files)\n tern's headers and static libraries, its CMake package (find_package(tern)),\n a pkg-config file, `tern new` (a service skeleton) and tern-call.")
set(CPACK_DEBIAN_GATEWAY_PACKAGE_NAME tern-gateway)
set(CPACK_DEBIAN_GATEWAY_PACKAGE_SECTION net)
set(CPACK_COMPONENT_GATEWAY_DESCRIPTION
    "tern's HTTP API gateway\n Routes HTTP requests to tern microservices by a JSON config, with auth,\n rate limits, caching, metrics and breakers; a systemd unit (tern-gateway).")
set(CPACK_DEBIAN_GATEWAY_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/packaging/conffiles;${PROJECT_SOURCE_DIR}/packaging/postinst;${PROJECT_SOURCE_DIR}/packaging/prerm;${PROJECT_SOURCE_DIR}/packaging/postrm")
include(CPack)
