{
  "targets": [
    {
      "target_name": "quantgate_kernels",
      "sources": [
        "src/qg_api.c",
        "src/qg_ref.c",
        "src/qg_threads.c",
        "src/qg_prep.c",
        "src/qg_gptq.c",
        "src/qg_tables.c",
        "src/qg_lowrank.c",
        "src/qg_napi.c",
        "src/arch/x86/qg_avx2.c",
        "src/arch/x86/qg_avx512.c",
        "src/arch/arm/qg_neon.c"
      ],
      "include_dirs": ["include"],
      "cflags": ["-std=c11", "-O3", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Wextra", "-fvisibility=hidden"],
      "cflags!": ["-O2"],
      "ldflags": ["-pthread"],
      "defines": ["NAPI_VERSION=8"],
      "xcode_settings": {
        "OTHER_CFLAGS": ["-std=c11", "-O3", "-ffp-contract=off", "-fno-fast-math"]
      }
    }
  ]
}
