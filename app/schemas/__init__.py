"""Request and response shapes (pydantic), so the OpenAPI schema documents every field."""
