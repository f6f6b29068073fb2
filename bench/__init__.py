"""The benchmark of ai-service: fake upstream, bare proxy, load generator, runner (`make bench`)."""
