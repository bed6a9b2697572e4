"""One model's inference: scheduler, prefix cache, detokenizer, step loop, worker."""
