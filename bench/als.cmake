# The ALS benchmark program (run through bench/bench-als).
add_executable(als_bench EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/bench/als_bench.c)
target_link_libraries(als_bench PRIVATE mfm_core)
