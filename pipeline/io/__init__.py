"""Storage URLs, Ray start-up, image decoding, job submission: what every stage stands on."""
