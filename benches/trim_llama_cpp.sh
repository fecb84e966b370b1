#!/usr/bin/env bash
# Copy of llama.cpp's source trimmed to what `llama-bench` needs with the CUDA and CPU backends
# (~22 MB instead of ~340), small enough to carry to the GPU machine, which has no network:
#
#   benches/trim_llama_cpp.sh path/to/llama-cpp-python-0.3.36/vendor/llama.cpp out/llama.cpp
#
# and there:
#
#   cmake -S out/llama.cpp -B build -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
#     -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
#     -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
#   cmake --build build --target llama-bench -j 12      # about 5 minutes on 16 cores
#
# Checked with llama.cpp 0c1e570 (the llama-cpp-python 0.3.36 sdist from PyPI).
set -eu
src=${1:?usage: trim_llama_cpp.sh LLAMA_CPP_SOURCE DEST}
dst=${2:?usage: trim_llama_cpp.sh LLAMA_CPP_SOURCE DEST}
rm -rf "$dst"
mkdir -p "$dst/tools" "$dst/ggml/src"
cp -r "$src"/{CMakeLists.txt,cmake,common,src,include,vendor,licenses,LICENSE} "$dst"/
cp -r "$src"/ggml/{CMakeLists.txt,cmake,include} "$dst/ggml/"
cp "$src"/ggml/src/{*.c,*.cpp,*.h,*.in,CMakeLists.txt} "$dst/ggml/src/"
cp -r "$src"/ggml/src/{ggml-cpu,ggml-cuda} "$dst/ggml/src/"
cp -r "$src/tools/llama-bench" "$dst/tools/"
# Only llama-bench among the tools.
printf 'find_package(Threads REQUIRED)\nllama_add_compile_flags()\nadd_subdirectory(llama-bench)\n' > "$dst/tools/CMakeLists.txt"
du -sh "$dst"
