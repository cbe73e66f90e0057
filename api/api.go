// Package api holds herald's published API definitions: the OpenAPI
// document of the HTTP API (served at /v1/openapi.json). docs/api.md is its
// prose form.
package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document of the HTTP API v1.
//
//go:embed openapi.json
var OpenAPI []byte
