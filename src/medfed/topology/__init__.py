"""Who talks to whom without a server: BrainTorrent, cyclic weight transfer and gossip averaging,
each reaching the sites only through the ``Grid`` seam (``medfed.orchestration.grid``)."""
