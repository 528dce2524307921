"""Detached Ed25519 signatures of model bundles (optional: ``pip install tacepredict[sign]``).

A bundle's ``checksums.sha256`` lists the SHA-256 of every file, ``model.json`` included; signing it signs the
whole bundle. The signature (``checksums.sha256.sig``, base64 text) is made with the signer's private key and
checked with the matching public key, which users get from the signer by a channel they trust (not from the
bundle's folder). The cryptography is the ``cryptography`` package's Ed25519 (RFC 8032); nothing here is
home-made.

    tacepredict keygen --out mykey              # mykey.pem (private, keep it) and mykey.pub.pem (share it)
    tacepredict sign-bundle --model BUNDLE --private-key mykey.pem
    tacepredict predict --model BUNDLE --public-key mykey.pub.pem ...

Verification with another tool: ``base64 -d checksums.sha256.sig > sig.bin`` and
``openssl pkeyutl -verify -pubin -inkey mykey.pub.pem -rawin -in checksums.sha256 -sigfile sig.bin``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from .. import InputError
from .bundle import CHECKSUMS_FILE, SIGNATURE_FILE, read_checksums, seal_bundle


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise InputError("signing and checking bundle signatures needs the 'cryptography' package", column="--public-key",
                         fix="pip install 'tacepredict[sign]' (or pip install cryptography)") from None
    return ed25519, serialization, InvalidSignature


def _read_bytes(path, option):
    if not path or not os.path.isfile(path):
        raise InputError(f"key file not found: {path}", column=option, fix="give the path of a PEM key file")
    with open(path, "rb") as handle:
        return handle.read()


def fingerprint(public_key):
    """The first 16 hex digits of the SHA-256 of the raw public key (to say which key verified)."""
    _, serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keys(prefix, passphrase=None):
    """Write ``<prefix>.pem`` (private key, PKCS#8, encrypted with ``passphrase`` when given; mode 600) and
    ``<prefix>.pub.pem`` (public key). Refuses to replace existing key files. Returns both paths."""
    ed25519, serialization, _ = _crypto()
    private_path, public_path = prefix + ".pem", prefix + ".pub.pem"
    for path in (private_path, public_path):
        if os.path.exists(path):
            raise InputError(f"{path} already exists", column="--out", fix="choose another --out (keys are never "
                                                                           "overwritten)")
    key = ed25519.Ed25519PrivateKey.generate()
    encryption = serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else \
        serialization.NoEncryption()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    folder = os.path.dirname(os.path.abspath(private_path))
    os.makedirs(folder, exist_ok=True)
    handle = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "wb") as stream:
        stream.write(private)
    with open(public_path, "wb") as stream:
        stream.write(public)
    return private_path, public_path


def _load_key(path, private, passphrase=None):
    """The Ed25519 private (``--private-key``) or public (``--public-key``) key of a PEM file; InputError naming
    that option when the file is not one."""
    ed25519, serialization, _ = _crypto()
    option, what, kind = ("--private-key", "private key", ed25519.Ed25519PrivateKey) if private else \
        ("--public-key", "public key", ed25519.Ed25519PublicKey)
    data = _read_bytes(path, option)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() if passphrase else None) \
            if private else serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path} is not a readable PEM {what} ({exc})", column=option,
                         fix="give the .pem file `tacepredict keygen` wrote (and its passphrase)" if private
                         else "give the .pub.pem file of the signer") from None
    if not isinstance(key, kind):
        raise InputError(f"{path} is not an Ed25519 {'key' if private else what}", column=option,
                         fix="make one with `tacepredict keygen`" if private
                         else "give the .pub.pem file `tacepredict keygen` wrote")
    return key


def sign_bundle(directory, private_key, passphrase=None):
    """Sign a bundle's ``checksums.sha256`` (written first if the bundle predates it: the signer vouches for
    the files as they are); returns the signature file's path."""
    from .bundle import load_bundle
    key = _load_key(private_key, True, passphrase)
    if read_checksums(directory) is None:
        seal_bundle(directory)
    load_bundle(directory)  # never sign a damaged bundle
    with open(os.path.join(directory, CHECKSUMS_FILE), "rb") as handle:
        signature = key.sign(handle.read())
    path = os.path.join(directory, SIGNATURE_FILE)
    with open(path + ".tmp", "w", encoding="ascii") as handle:
        handle.write(base64.b64encode(signature).decode() + "\n")
    os.replace(path + ".tmp", path)
    return path


def verify_bundle(directory, public_key):
    """Check the bundle's signature with ``public_key`` (PEM path); returns a sentence naming the key, or
    raises InputError. The checksums themselves are verified by ``load_bundle``."""
    _, _, InvalidSignature = _crypto()
    key = _load_key(public_key, False)
    signature_path = os.path.join(directory, SIGNATURE_FILE)
    if not os.path.isfile(signature_path):
        raise InputError(f"{directory} is not signed (no {SIGNATURE_FILE}), but --public-key asks for a signature",
                         column="--public-key", fix="get the signed bundle from its author, or leave out "
                                                    "--public-key to use it unsigned")
    checksums = os.path.join(directory, CHECKSUMS_FILE)
    if not os.path.isfile(checksums):
        raise InputError(f"{directory} has no {CHECKSUMS_FILE} to check the signature against", column="--model",
                         fix="get the signed bundle from its author")
    try:
        with open(signature_path, encoding="ascii") as handle:
            signature = base64.b64decode(handle.read().strip(), validate=True)
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise InputError(f"{signature_path} is not a base64 signature", column="--model",
                         fix="re-copy the signed bundle") from None
    with open(checksums, "rb") as handle:
        data = handle.read()
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise InputError(f"the signature of {directory} does not match the key {public_key}: the bundle was "
                         "changed after signing, or signed by someone else", column="--public-key",
                         fix="do not use this bundle; get it again from its author") from None
    return f"signature verified with the key {fingerprint(key)} ({os.path.basename(public_key)})"
