{
  "targets": [{
    "target_name": "int_host_reporter_netlink",
    "sources": ["src/socket.cc", "src/netlink.cc"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "../native"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
    "cflags_cc!": ["-fno-exceptions"]
  }]
}
