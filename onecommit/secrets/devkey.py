"""The kind cluster's sealed-secrets key pair, derived from the public seed in
`kind/sealing-key.yaml`, so that a fresh clone reproduces the key its dev secrets are sealed for.

No private key is ever committed: the seed is, and the key follows from it. The seed is public
on purpose, so the dev key and every dev value are readable by anyone with the repository: dev
runs on a throwaway local cluster. Other envs are sealed for their own controller's key.

The derivation is deterministic RSA key generation: candidates for each prime are SHAKE-256
output of (seed, prime label, counter) with the two top bits and the low bit set, and the first
probable prime (trial division, then Miller-Rabin) coprime to e=65537 wins. The self-signed
certificate is deterministic too (fixed dates, serial from the seed).

`python -m onecommit.secrets.devkey secret --namespace NS --out FILE` writes the controller's key
Secret (`kubernetes.io/tls`, labelled active) for `invoke up --profile kind`; `key` and `cert`
write the PEM halves, to re-seal after a seed change.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from onecommit.files import write_all, write_private
from onecommit.secrets import SecretsError
from onecommit.secrets.catalog import sealing_cert_path
from onecommit.secrets.sealing import controller_certificate, dump_manifests, pem_pair
from onecommit.settings import PROJECT_ROOT

SEED_FILE = Path("kind") / "sealing-key.yaml"
PUBLIC_EXPONENT = 65537
# The label the controller looks for when it starts: such Secrets are its keys.
ACTIVE_KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
_DOMAIN = b"onecommit sealed-secrets dev key\0"
_MILLER_RABIN_ROUNDS = 40
_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]


@dataclass(frozen=True)
class Seed:
    """kind/sealing-key.yaml: which env the key seals, the seed and the certificate's shape."""

    env: str
    seed: str
    bits: int
    common_name: str
    not_before: datetime.datetime
    valid_days: int

    @classmethod
    def load(cls, root: Path = PROJECT_ROOT) -> Seed:
        path = root / SEED_FILE
        try:
            data: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
            return cls(str(data["env"]), str(data["seed"]), int(data["bits"]),
                       str(data["commonName"]),
                       datetime.datetime.fromisoformat(str(data["notBefore"])),
                       int(data["validDays"]))
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as error:
            raise SecretsError(f"{path}: cannot read the dev key seed ({error!r}): it needs env, "
                               "seed, bits, commonName, notBefore and validDays") from None


def _candidate(seed: bytes, label: bytes, counter: int, bits: int) -> int:
    digest = hashlib.shake_256(_DOMAIN + seed + b"\0" + label + counter.to_bytes(8, "big"))
    value = int.from_bytes(digest.digest(bits // 8), "big")
    # Two top bits: the product of two such primes has exactly 2*bits bits. Low bit: odd.
    return value | (0b11 << (bits - 2)) | 1


def _probably_prime(n: int) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    # Fixed bases are enough: candidates come from a hash, not from an adversary.
    for base in _SMALL_PRIMES[:_MILLER_RABIN_ROUNDS]:
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(seed: bytes, label: bytes, bits: int) -> int:
    counter = 0
    while True:
        n = _candidate(seed, label, counter, bits)
        if (n - 1) % PUBLIC_EXPONENT != 0 and _probably_prime(n):
            return n
        counter += 1


def derive_key(seed: Seed) -> rsa.RSAPrivateKey:
    """The same RSA key for the same seed, on every machine."""
    raw = seed.seed.encode()
    p, q = _prime(raw, b"p", seed.bits // 2), _prime(raw, b"q", seed.bits // 2)
    d = rsa.rsa_recover_private_exponent(PUBLIC_EXPONENT, p, q)
    public = rsa.RSAPublicNumbers(PUBLIC_EXPONENT, p * q)
    numbers = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                    rsa.rsa_crt_iqmp(p, q), public)
    return numbers.private_key()


def derive(seed: Seed) -> tuple[bytes, bytes]:
    """(PKCS#1 key PEM, certificate PEM) of the dev key, both reproducible."""
    key = derive_key(seed)
    serial = int.from_bytes(hashlib.sha256(_DOMAIN + seed.seed.encode()).digest()[:16], "big")
    cert = controller_certificate(key, seed.common_name, seed.not_before, seed.valid_days,
                                  serial >> 1 or 1)  # positive, below 2**127
    return pem_pair(key, cert)


def key_secret(seed: Seed, namespace: str, name: str) -> dict[str, Any]:
    """The controller's key Secret: `kubernetes.io/tls` in its namespace, labelled active."""
    key_pem, cert_pem = derive(seed)
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {ACTIVE_KEY_LABEL: "active",
                                    "app.kubernetes.io/part-of": "onecommit"}},
            "data": {"tls.crt": base64.b64encode(cert_pem).decode(),
                     "tls.key": base64.b64encode(key_pem).decode()}}


def check_committed_cert(root: Path, seed: Seed) -> None:
    """The env's committed certificate must be the derived one, or its secrets would not open."""
    path = sealing_cert_path(root, seed.env)
    _, cert_pem = derive(seed)
    try:
        committed = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as error:
        raise SecretsError(f"cannot read {path} ({error}): write it with `python -m "
                           "onecommit.secrets.devkey cert --out` that path") from None
    if committed != x509.load_pem_x509_certificate(cert_pem):
        raise SecretsError(f"{path} is not the certificate of the key {SEED_FILE} derives: "
                           f"re-seal {seed.env} for the new key (README, Security)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onecommit.secrets.devkey",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("secret", "key", "cert"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--namespace", default="kube-system",
                        help="the controller's namespace (secret only)")
    parser.add_argument("--name", default="sealed-secrets-key-onecommit",
                        help="name of the key Secret (secret only)")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT)
    args = parser.parse_args(argv)
    try:
        seed = Seed.load(args.root)
        if args.what == "cert":
            write_all({args.out: derive(seed)[1].decode()})
            return 0
        check_committed_cert(args.root, seed)
        text = (derive(seed)[0].decode() if args.what == "key"
                else dump_manifests([key_secret(seed, args.namespace, args.name)]))
        write_private(args.out, text)
    except (SecretsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
