# find_package(tern) inside tern's own build (the examples are written as a
# user's project is): the targets are already defined here.
if(NOT TARGET tern::tern)
  message(FATAL_ERROR "cmake/in-tree/tern-config.cmake is for tern's own build only")
endif()
