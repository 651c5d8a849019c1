"""Ingest: photos (EXIF GPS + structure from motion) or a COLMAP model -> a geo-registered capture.

    from blocknerf.ingest import IngestConfig, ingest_photos
    report = ingest_photos("photos/", "capture/", IngestConfig(max_size=1600))
    print(report.format())

``exif`` reads (and writes) the EXIF fields we use, ``photos`` checks and downsizes a photo folder,
``sfm`` runs pycolmap, ``colmap_model`` converts a reconstruction to blocknerf cameras,
``registration`` fits the similarity to GPS in local ENU metres, ``report`` prints and draws the
result, ``ingestion`` ties them together; ``extend`` registers later photos into an ingest's
reconstruction (for ``blocknerf update STORE PHOTOS_DIR``). Importing the package imports neither pycolmap nor torch.
"""

from blocknerf.lazy import lazy_exports

_EXPORTS = {
    "IngestConfig": "blocknerf.ingest.ingestion",
    "ingest_colmap": "blocknerf.ingest.ingestion",
    "ingest_photos": "blocknerf.ingest.ingestion",
    "ingest_provenance": "blocknerf.ingest.extend",
    "register_photos": "blocknerf.ingest.extend",
    "IngestReport": "blocknerf.ingest.report",
    "PhotoExif": "blocknerf.ingest.exif",
    "exif_bytes": "blocknerf.ingest.exif",
    "parse_exif": "blocknerf.ingest.exif",
    "read_exif": "blocknerf.ingest.exif",
    "SfmConfig": "blocknerf.ingest.sfm",
    "Similarity": "blocknerf.ingest.registration",
    "fit_similarity": "blocknerf.ingest.registration",
    "register_to_gps": "blocknerf.ingest.registration",
    "robust_similarity": "blocknerf.ingest.registration",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
