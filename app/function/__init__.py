"""The HTTP prediction function (Cloud Functions gen 2 locally served by functions-framework)."""
