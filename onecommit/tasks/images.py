"""`invoke images`: build every image of the compose profile."""

from __future__ import annotations

from invoke.context import Context

from onecommit.tasks import task
from onecommit.tasks.platform import load_settings


@task(help={"base": "python (the pinned public image) or debian (debootstrap); default: "
                    "python if the engine has it or the public registry answers within 3 s, "
                    "else debian; = ONECOMMIT_IMAGE_BASE",
            "ca_bundle": "the PEM bundle every image trusts beside the public CAs (a "
                         "TLS-inspecting proxy's CA), or none; default: the host's "
                         "/etc/ssl/certs/ca-certificates.crt; = ONECOMMIT_IMAGE_CA_BUNDLE",
            "no_cache": "build every layer again (a cold build's time; the Debian base image "
                        "stays)"})
def images(c: Context, base: str = "", ca_bundle: str = "", no_cache: bool = False) -> None:
    """Build every image from docker/*.Dockerfile (the engine's cache keeps what did not
    change) and print each one's build time and size."""
    from onecommit.platform import images as building

    settings = load_settings(image_base=base or None, image_ca_bundle=ca_bundle or None)
    built = building.build(settings.image_base, settings.image_ca_bundle, cached=not no_cache)
    for image in built:
        print(f"{image.image:<40} {image.seconds:>7.1f} s {image.size_mb:>8.0f} MB")
    print(f"{'total':<40} {sum(i.seconds for i in built):>7.1f} s")


@task
def engine(c: Context) -> None:
    """Make sure a Docker engine answers: as root on Debian, install docker.io and start
    dockerd (fuse-overlayfs storage where FUSE is available, else vfs) when none does. It
    stays running, as the machine's engine."""
    from onecommit.platform import engine as docker_engine

    version = docker_engine.ensure().version()
    print(f"Docker engine {version['Version']} (API {version['ApiVersion']}) answers")
