"""Errors raised by the face pipeline."""

from __future__ import annotations

__all__ = ("VisionError", "ModelLoadError", "ImageDecodeError", "ImageTooSmallError", "ImageTooLargeError")


class VisionError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ModelLoadError(VisionError):
    """A model file is missing, unreadable, or not the kind the config declares."""


class ImageDecodeError(VisionError):
    """Bytes that are empty, truncated, corrupt or of an unsupported format."""


class ImageTooSmallError(ImageDecodeError):
    """A well-formed image too small to hold a face (under 2x2 pixels)."""


class ImageTooLargeError(VisionError):
    """An image over the byte or pixel limit (decompression bombs included)."""
