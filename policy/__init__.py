"""The fraud-mlops guardrails policy pack (pulumi-policy)."""
