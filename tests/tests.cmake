# Included from the top CMakeLists.txt.  Three kinds of tests, all run by
# ctest: C unit tests (one executable per tests/c/test_<area>.c), busted
# specs of the Lua layer and binding (tests/spec), and end-to-end specs that
# run the moonfm executable on fake /opt/ml trees (tests/e2e).

file(GLOB MFM_C_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/c/test_*.c)
foreach(src ${MFM_C_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/c)
  target_link_libraries(${name} PRIVATE mfm_core)
  string(REGEX REPLACE "^test_" "" area ${name})
  add_test(NAME c.${area} COMMAND ${name})
  set_tests_properties(c.${area} PROPERTIES ENVIRONMENT
    "MFM_TEST_TMP=${CMAKE_BINARY_DIR}/tmp")
endforeach()

find_program(LUA54 lua5.4 REQUIRED)
find_program(BUSTED busted REQUIRED)

# busted under lua5.4, never through --lua (TOOLCHAIN P4, P5): the build's
# own module first, so an ASan build tests its own core.so.
# $<SEMICOLON> keeps the path list one argument (a plain ; would split it).
set(MFM_BUSTED ${LUA54} ${BUSTED} --ignore-lua -o TAP
    --cpath=${CMAKE_BINARY_DIR}/lua/?.so
    "--lpath=${CMAKE_SOURCE_DIR}/lua/?.lua$<SEMICOLON>${CMAKE_SOURCE_DIR}/lua/?/init.lua$<SEMICOLON>${CMAKE_SOURCE_DIR}/tests/?.lua")
set(MFM_TEST_ENV
  "MOONFM_EXE=${CMAKE_BINARY_DIR}/moonfm"
  "MOONFM_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
  "MOONFM_TEST_TMP=${CMAKE_BINARY_DIR}/tmp"
  "OPENBLAS_NUM_THREADS=1"
  ${MOONFM_EXTRA_TEST_ENV})

add_test(NAME lua.spec COMMAND ${MFM_BUSTED} tests/spec
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(lua.spec PROPERTIES ENVIRONMENT "${MFM_TEST_ENV}")

# One ctest entry per end-to-end spec file, so they run in parallel and a
# failure names its area.
file(GLOB MFM_E2E_SPECS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/*_spec.lua)
foreach(spec ${MFM_E2E_SPECS})
  get_filename_component(name ${spec} NAME_WE)
  string(REGEX REPLACE "_spec$" "" area ${name})
  add_test(NAME e2e.${area} COMMAND ${MFM_BUSTED} ${spec}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(e2e.${area} PROPERTIES ENVIRONMENT "${MFM_TEST_ENV}"
                       TIMEOUT 600)
endforeach()
