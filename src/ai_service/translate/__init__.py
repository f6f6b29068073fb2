"""Translations of an API surface to and from chat completions, for the providers
that do not speak it themselves."""
