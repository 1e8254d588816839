"""Running a real federation: the server's round loop over gRPC and a site's client loop."""
