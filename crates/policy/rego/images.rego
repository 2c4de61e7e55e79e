# Image references, read the way Docker reads them.
#
# parse("nginx") is {"registry": "docker.io", "repository": "library/nginx", "tag": "", "digest": ""}.
# under_any(name, prefixes) compares whole path components, so that the prefix
# "registry.acme/base/" admits "registry.acme/base/go" but never "registry.acme/base-evil/go".
#
# The admission webhook runs these as regorus bytecode on every review, where a
# function call costs as much as a dozen expressions. So each function is one
# body without helper calls or `else` chains: where Docker's rules branch, the
# branch is a lookup keyed by a boolean.
package bulkhead.lib.images

import rego.v1

parse(image) := {
	"registry": registry,
	"repository": repository,
	"name": concat("/", [registry, repository]),
	# The text after the first ":" of the last component, "" without one.
	"tag": concat("", array.slice(last, 1, 2)),
	# The text after the first "@", "" without one.
	"digest": concat("", array.slice(at, 1, 2)),
} if {
	at := split(image, "@")
	segments := split(at[0], "/")
	n := count(segments)
	last := split(segments[n - 1], ":")

	# The components without the tag: ["localhost:5000", "team", "app"].
	path := array.concat(array.slice(segments, 0, n - 1), [last[0]])

	# The first of several components names a registry when it has a dot or a
	# port, or is localhost; otherwise the image is on Docker Hub.
	qualified := [n > 1, true in {contains(path[0], "."), contains(path[0], ":"), path[0] == "localhost"}] == [true, true]
	host := lower(path[0])
	registry := {true: object.get({"index.docker.io": "docker.io"}, host, host), false: "docker.io"}[qualified]

	# A single component is an official image: "nginx" is "library/nginx".
	hub_repository := concat("/", array.concat({true: ["library"], false: []}[n == 1], path))
	repository := {true: concat("/", array.slice(path, 1, n)), false: hub_repository}[qualified]
}

# How firmly a reference pins what it pulls: digest, tag, latest or none.
pinning(ref) := "digest" if ref.digest != ""

else := "none" if ref.tag == ""

else := "latest" if ref.tag == "latest"

else := "tag"

# Whether name is one of the prefixes or lies below one. With a "/" after
# both, "is or lies below" is "starts with".
under_any(name, prefixes) if {
	strings.any_prefix_match(concat("", [name, "/"]), [concat("", [trim_suffix(prefix, "/"), "/"]) | some prefix in prefixes])
}
