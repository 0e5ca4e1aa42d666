# ccache for every compile, set up so that precompiled headers are cached too and
# separate clones (CI, worktrees) share hits: paths are made relative to the source dir.
find_program(T4G_CCACHE ccache)
if(T4G_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env
      CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      CCACHE_BASEDIR=${CMAKE_SOURCE_DIR} CCACHE_NOHASHDIR=1 ${T4G_CCACHE})
  set(CMAKE_C_COMPILER_LAUNCHER ${CMAKE_CXX_COMPILER_LAUNCHER})
endif()
# -fpch-preprocess is what lets ccache cache translation units that use a PCH.
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fpch-preprocess>)
