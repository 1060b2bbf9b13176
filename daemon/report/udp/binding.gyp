{
  "targets": [{
    "target_name": "int_host_reporter_udp",
    "sources": ["udp.cc"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "../../../native"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wno-missing-field-initializers"],
    "cflags_cc!": ["-fno-exceptions"]
  }]
}
