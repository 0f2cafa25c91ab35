"""Working-language detection: probes, token sets, the logit and tuned lens."""
