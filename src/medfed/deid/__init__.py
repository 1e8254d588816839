"""``medfed deid``: de-identification of a site's DICOM before it is used (nothing leaves the site)."""
