#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ (committed; rerun only to change them).

Real images made small: a public-domain photo (NASA's astronaut from scikit-image, which the
vision tests fetch into .cache/testdata) and the repo's own canny test card, in the JPEG, PNG and
WebP variants the decoders branch on, plus malformed files (truncated, bad checksums, huge or zero
declared sizes, other formats). Then hand-written upload requests in upload_parse's input layout
(see fuzz_targets/upload_parse.rs). Inputs that once crashed a target are added to its corpus by
hand (e.g. ingest_decode/exif_past_the_end.webp); this script leaves them alone. Needs Pillow:
`pip install pillow`.

    python3 fuzz/make_seeds.py [PHOTO]
"""
import base64
import io
import json
import struct
import sys
import zlib
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent
INGEST = ROOT / "corpus" / "ingest_decode"
UPLOAD = ROOT / "corpus" / "upload_parse"
PHOTO = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / ".cache/testdata/astronaut.png"
CARD = ROOT.parent / "host/vision/tests/golden/canny_input.png"


def encode(img, fmt, **options):
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def exif_orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, depth, colour, raw, interlace=0):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def adam7_rgb(img):
    """An interlaced RGB8 PNG (Pillow writes none)."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    width, height = img.size
    px = img.load()
    raw = b""
    for x0, y0, dx, dy in passes:
        xs = range(x0, width, dx)
        for y in range(y0, height, dy):
            if len(xs):
                raw += b"\x00" + b"".join(bytes(px[x, y]) for x in xs)
    return png(width, height, 8, 2, raw, interlace=1)


def write(folder, name, data):
    (folder / name).write_bytes(data)


def ingest_seeds():
    photo = Image.open(PHOTO).convert("RGB")
    small = photo.resize((32, 32), Image.LANCZOS)
    tall = photo.resize((12, 20), Image.LANCZOS)
    card = Image.open(CARD).convert("RGB").resize((40, 30), Image.LANCZOS)
    rgba = small.copy()
    rgba.putalpha(Image.linear_gradient("L").resize((32, 32)))

    seeds = {
        "photo.jpg": encode(small, "JPEG", quality=75),
        "photo_444.jpg": encode(small, "JPEG", quality=90, subsampling=0),
        "photo_progressive.jpg": encode(small, "JPEG", quality=60, progressive=True),
        "photo_grey.jpg": encode(small.convert("L"), "JPEG"),
        "photo_cmyk.jpg": encode(small.convert("CMYK"), "JPEG"),
        "photo_orientation6.jpg": encode(tall, "JPEG", exif=exif_orientation(6)),
        "photo_orientation3.jpg": encode(tall, "JPEG", exif=exif_orientation(3)),
        "photo.png": encode(small, "PNG"),
        "photo_rgba.png": encode(rgba, "PNG"),
        "photo_palette.png": encode(small.quantize(16), "PNG", transparency=0),
        "photo_grey16.png": encode(small.convert("L").convert("I").point(lambda v: v * 257).convert("I;16"), "PNG"),
        "photo_grey_alpha.png": encode(rgba.convert("LA"), "PNG"),
        "photo_1bit.png": encode(small.convert("1"), "PNG"),
        "photo_interlaced.png": adam7_rgb(tall),
        "photo_orientation8.png": encode(tall, "PNG", exif=exif_orientation(8)),
        "card.png": encode(card, "PNG", optimize=True),
        "photo_lossy.webp": encode(small, "WEBP", quality=50),
        "photo_lossless.webp": encode(small, "WEBP", lossless=True),
        "photo_alpha.webp": encode(rgba, "WEBP", quality=50),
        "photo_orientation6.webp": encode(tall, "WEBP", quality=50, exif=exif_orientation(6)),
        "photo_animated.webp": encode(small, "WEBP", save_all=True, append_images=[card.resize((32, 32))], duration=100, quality=40),
        # Too large for the fuzz target's limits (256 a side, 128x128 in all), but small files.
        "over_pixels.png": encode(Image.new("RGB", (200, 200), (200, 30, 30)), "PNG"),
        "over_side.jpg": encode(Image.new("L", (300, 8), 90), "JPEG"),
    }
    good_png, good_jpg, good_webp = seeds["photo.png"], seeds["photo.jpg"], seeds["photo_lossy.webp"]
    bad_crc = bytearray(good_png)
    bad_crc[29] ^= 0xFF  # the IHDR checksum
    huge_jpg = bytearray(good_jpg)
    sof = huge_jpg.index(b"\xff\xc0")
    huge_jpg[sof + 5:sof + 9] = struct.pack(">HH", 65000, 65000)
    huge_webp = b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" \
        + (0xFFFFFF).to_bytes(3, "little") * 2 + b"VP8 \x00\x00\x00\x00"
    seeds.update({
        "truncated.jpg": good_jpg[: len(good_jpg) // 2],
        "truncated.png": good_png[: len(good_png) // 2],
        "truncated.webp": good_webp[: len(good_webp) // 2],
        "bad_crc.png": bytes(bad_crc),
        "huge.png": png(100_000, 100_000, 8, 2, b"\x00" * 16),
        "zero.png": png(0, 0, 8, 2, b""),
        "huge.jpg": bytes(huge_jpg),
        "huge.webp": huge_webp,
        # One byte over the fuzz target's 16 KiB upload limit.
        "over_upload.jpg": good_jpg + b"\0" * (16 * 1024 + 1 - len(good_jpg)),
        "magic_only.jpg": b"\xff\xd8\xff",
        "magic_only.webp": b"RIFF\x00\x00\x00\x00WEBP",
        "other.gif": encode(Image.new("P", (2, 2)), "GIF"),
        "other.bmp": encode(Image.new("RGB", (2, 2)), "BMP"),
        "other.txt": b"hello, this is not a photo\n",
    })
    for name, data in seeds.items():
        write(INGEST, name, data)


def multipart(parts, boundary="likeness-fuzz", close=True):
    out = b""
    for name, data, extra in parts:
        out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{extra}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + (f"--{boundary}--\r\n".encode() if close else b"")


def upload_seeds():
    pixel = encode(Image.new("RGB", (1, 1), (200, 120, 80)), "PNG")
    data_url = "data:image/png;base64," + base64.b64encode(pixel).decode()
    image = ("image", pixel, '; filename="p.png"\r\nContent-Type: image/png')
    options = ("options", json.dumps({"palette": "gameboy", "pixel-size": 6, "dither": True}).encode(), "")
    fmt = ("output_format", b"webp", "")
    IMAGE_ONLY, WITH_OPTIONS = 0, 8
    MULTIPART, JSON, OCTETS, PNG, NONE, HEADER = 0, 1, 2, 3, 6, 7
    seeds = {
        "multipart_image": (MULTIPART | IMAGE_ONLY, 0, multipart([image])),
        "multipart_all_fields": (MULTIPART | WITH_OPTIONS, 0, multipart([image, options, fmt])),
        "multipart_chunked": (MULTIPART | WITH_OPTIONS, 7, multipart([image, options, fmt])),
        "multipart_repeated_image": (MULTIPART | IMAGE_ONLY, 0, multipart([image, image])),
        "multipart_unknown_field": (MULTIPART | WITH_OPTIONS, 0, multipart([image, ("colour", b"red", "")])),
        "multipart_bad_options": (MULTIPART | WITH_OPTIONS, 0, multipart([image, ("options", b"[1, {\"a\"", "")])),
        "multipart_unclosed": (MULTIPART | IMAGE_ONLY, 3, multipart([image], close=False)),
        "multipart_quoted_boundary": (HEADER | WITH_OPTIONS, 0,
                                      b'Multipart/Form-Data; boundary="b c"\n' + multipart([image, fmt], boundary="b c")),
        "multipart_no_boundary": (HEADER | IMAGE_ONLY, 0, b"multipart/form-data\n" + multipart([image])),
        "json_data_url": (JSON | IMAGE_ONLY, 0, json.dumps({"image": data_url}).encode()),
        "json_all_fields": (JSON | WITH_OPTIONS, 5, json.dumps({"image": data_url, "options": {"seed": 18446744073709551615, "strength": 0.5, "mode": "x"}, "output_format": "jpeg"}).encode()),
        "json_bare_base64": (JSON | WITH_OPTIONS, 0, json.dumps({"image": base64.encodebytes(pixel).decode()}).encode()),
        "json_not_base64": (JSON | IMAGE_ONLY, 0, b'{"image": "data:image/png,hi"}'),
        "json_nested_option": (JSON | WITH_OPTIONS, 0, json.dumps({"image": data_url, "options": {"a": [1, {"b": None}]}}).encode()),
        "json_too_many_options": (JSON | WITH_OPTIONS, 0, json.dumps({"image": data_url, "options": {f"o{i}": i for i in range(65)}}).encode()),
        "json_unknown_field": (JSON | IMAGE_ONLY, 0, json.dumps({"image": data_url, "options": {}}).encode()),
        "json_charset": (HEADER | WITH_OPTIONS, 0, b"application/json; charset=utf-8\n" + json.dumps({"image": data_url}).encode()),
        "raw_png": (PNG | IMAGE_ONLY, 0, pixel),
        "raw_octets_for_generation": (OCTETS | WITH_OPTIONS, 0, pixel),
        "no_content_type": (NONE | IMAGE_ONLY, 0, pixel),
    }
    for name, (selector, chunk, body) in seeds.items():
        write(UPLOAD, name, bytes([selector, chunk]) + body)


if __name__ == "__main__":
    INGEST.mkdir(parents=True, exist_ok=True)
    UPLOAD.mkdir(parents=True, exist_ok=True)
    ingest_seeds()
    upload_seeds()
