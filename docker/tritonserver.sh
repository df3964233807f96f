#!/bin/sh
# tritonserver from the nvidia-pytriton wheel with its own backends and this interpreter's
# libpython first on the library path; arguments are passed through (the chart adds its flags).
set -eu
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
libdir=$(python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
triton="$site/pytriton/tritonserver"
export LD_LIBRARY_PATH="$libdir:$site/nvidia_pytriton.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$triton/bin/tritonserver" --backend-directory="$triton/backends" "$@"
