"""Protocol translation between the Anthropic Messages API and upstream APIs.

Pure functions over JSON-shaped dicts: no Django, no I/O. ``converse*`` modules speak AWS Bedrock
Converse / ConverseStream / CountTokens.
"""
