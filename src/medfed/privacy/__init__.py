"""Privacy controls: secure aggregation (``medfed.privacy.secagg``), encrypted aggregation
(``medfed.privacy.ckks``) and differential privacy (``medfed.privacy.dp``).

Nothing is imported here on purpose: the subpackages pull in ``cryptography``, ``tenseal`` and
``opacus``, which only the runs that use them should pay for.
"""
