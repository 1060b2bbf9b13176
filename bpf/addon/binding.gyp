{
  "variables": {
    "libbpf_dir%": "../../build/libbpf",
    "libelf_a%": "../../build/libelf/obj/libelf_pic.a",
    "zlib_a%": "../../build/zlib/obj/libz.a"
  },
  "targets": [{
    "target_name": "int_host_reporter",
    "sources": ["src/addon.cc", "src/object.cc", "src/attach.cc", "src/reader.cc"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<(libbpf_dir)/include", "../../native"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wno-missing-field-initializers"],
    "cflags_cc!": ["-fno-exceptions"],
    "libraries": ["-Wl,--exclude-libs,ALL", "<(libbpf_dir)/obj/libbpf.a", "<(libelf_a)", "<(zlib_a)"]
  }]
}
