"""The capture: images with camera poses (and GPS), read from and written to ``transforms.json``.

    from blocknerf.capture import read_capture
    capture = read_capture("my_capture/")          # -> Capture of Frames
    print(format_summary(summarize(capture)))

``frames`` holds the model (``Capture``, ``Frame``, ``Intrinsics``), ``transforms`` the file format,
``geo`` the local east-north-up frame, ``images`` image I/O, ``inspection`` the checks behind
``blocknerf inspect`` and ``rays`` the camera rays of a frame. Importing the package does not import
torch: ``rays`` (torch) loads on first use.
"""

from blocknerf.lazy import lazy_exports

_EXPORTS = {
    "Capture": "blocknerf.capture.frames",
    "Frame": "blocknerf.capture.frames",
    "Intrinsics": "blocknerf.capture.frames",
    "pose_problem": "blocknerf.capture.frames",
    "LLA": "blocknerf.capture.geo",
    "GeoFrame": "blocknerf.capture.geo",
    "as_lla": "blocknerf.capture.geo",
    "image_size": "blocknerf.capture.images",
    "load_image": "blocknerf.capture.images",
    "save_image": "blocknerf.capture.images",
    "check_images": "blocknerf.capture.inspection",
    "format_summary": "blocknerf.capture.inspection",
    "summarize": "blocknerf.capture.inspection",
    "camera_directions": "blocknerf.capture.rays",
    "image_rays": "blocknerf.capture.rays",
    "world_rays": "blocknerf.capture.rays",
    "capture_from_dict": "blocknerf.capture.transforms",
    "capture_to_dict": "blocknerf.capture.transforms",
    "read_capture": "blocknerf.capture.transforms",
    "transforms_path": "blocknerf.capture.transforms",
    "write_capture": "blocknerf.capture.transforms",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
