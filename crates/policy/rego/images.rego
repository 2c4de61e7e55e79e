# Image references, read the way Docker reads them.
#
# parse("nginx") is {"registry": "docker.io", "repository": "library/nginx", "tag": "", "digest": ""}.
# under(name, prefix) compares whole path components, so that the prefix
# "registry.acme/base/" admits "registry.acme/base/go" but never "registry.acme/base-evil/go".
package bulkhead.lib.images

import rego.v1

nth_or(arr, i, fallback) := arr[i] if {
	count(arr) > i
} else := fallback

parse(image) := {
	"registry": registry,
	"repository": repository,
	"name": concat("/", [registry, repository]),
	"tag": tag,
	"digest": digest,
} if {
	at_parts := split(image, "@")
	digest := nth_or(at_parts, 1, "")
	segments := split(at_parts[0], "/")
	last := split(segments[count(segments) - 1], ":")
	tag := nth_or(last, 1, "")
	path := array.concat(array.slice(segments, 0, count(segments) - 1), [last[0]])
	registry := registry_of(path)
	repository := repository_of(path)
}

has_registry(path) if {
	count(path) > 1
	first := path[0]
	some marker in [".", ":"]
	contains(first, marker)
}

has_registry(path) if {
	count(path) > 1
	path[0] == "localhost"
}

registry_of(path) := host if {
	has_registry(path)
	lowered := lower(path[0])
	host := docker_hub(lowered)
} else := "docker.io"

docker_hub(host) := "docker.io" if host == "index.docker.io"

else := host

repository_of(path) := concat("/", array.slice(path, 1, count(path))) if has_registry(path)

else := concat("/", ["library", path[0]]) if count(path) == 1

else := concat("/", path)

# How firmly a reference pins what it pulls: digest, tag, latest or none.
pinning(ref) := "digest" if ref.digest != ""

else := "none" if ref.tag == ""

else := "latest" if ref.tag == "latest"

else := "tag"

under(name, prefix) if name == trim_suffix(prefix, "/")

under(name, prefix) if startswith(name, concat("", [trim_suffix(prefix, "/"), "/"]))

under_any(name, prefixes) if {
	some prefix in prefixes
	under(name, prefix)
}
