"""Pure metric functions (no I/O, no engines): forces, RDF, diffusion, stability, throughput."""
