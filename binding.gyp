{
  "variables": {
    "core_sources": "<!(node -p \"require('fs').readdirSync('native/core').filter(f => f.endsWith('.cpp') && !f.endsWith('_avx2.cpp') && !f.endsWith('_neon.cpp')).map(f => 'native/core/' + f).join(' ')\")",
    "avx2_sources": "<!(node -p \"require('fs').readdirSync('native/core').filter(f => f.endsWith('_avx2.cpp')).map(f => 'native/core/' + f).join(' ')\")",
    "neon_sources": "<!(node -p \"require('fs').readdirSync('native/core').filter(f => f.endsWith('_neon.cpp')).map(f => 'native/core/' + f).join(' ')\")",
    "binding_sources": "<!(node -p \"require('fs').readdirSync('native/binding').filter(f => f.endsWith('.cpp')).map(f => 'native/binding/' + f).join(' ')\")",
    "stub_sources": "<!(node -p \"require('fs').readdirSync('native/cuda').filter(f => f.endsWith('_stub.cpp')).map(f => 'native/cuda/' + f).join(' ')\")"
  },
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "LIEQ_BUILD_SYSTEM=\"node-gyp\""],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
    "conditions": [["target_arch=='x64'", {"defines": ["LIEQ_AVX2"]}], ["target_arch=='arm64'", {"defines": ["LIEQ_NEON"]}]]
  },
  "targets": [
    {
      "target_name": "lieq",
      "sources": ["<@(core_sources)", "<@(binding_sources)", "<@(stub_sources)"],
      "conditions": [["target_arch=='x64'", {"dependencies": ["lieq_avx2"]}], ["target_arch=='arm64'", {"sources": ["<@(neon_sources)"]}]]
    },
    {
      "target_name": "lieq_avx2",
      "type": "static_library",
      "sources": ["<@(avx2_sources)"],
      "cflags": ["-mavx2", "-mfma", "-mf16c", "-fPIC"]
    }
  ]
}
