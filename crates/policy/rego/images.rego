# Image references, read the way Docker reads them.
#
# parse("nginx") is {"registry": "docker.io", "repository": "library/nginx", "tag": "", "digest": ""}.
# under_any(name, prefixes) reads the prefixes the same way and compares whole
# path components, so that the prefix "registry.acme/base/" admits
# "registry.acme/base/go" but never "registry.acme/base-evil/go", and
# "docker.io/busybox" admits "busybox".
#
# The admission webhook runs these as regorus bytecode on every review, where a
# function call costs as much as a dozen expressions. So each function is one
# body without `else` chains (where Docker's rules branch, the branch is a
# lookup keyed by a boolean), and parse calls no helper; under_any calls
# prefix_names once per configured prefix.
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

	# A single component on Docker Hub is an official image, however the
	# registry is spelled: "nginx" and "docker.io/nginx" are "library/nginx".
	rest := {true: array.slice(path, 1, n), false: path}[qualified]
	official := [registry, count(rest)] == ["docker.io", 1]
	repository := concat("/", array.concat({true: ["library"], false: []}[official], rest))
}

# How firmly a reference pins what it pulls: digest, tag, latest or none.
pinning(ref) := "digest" if ref.digest != ""

else := "none" if ref.tag == ""

else := "latest" if ref.tag == "latest"

else := "tag"

# The fully qualified names a prefix stands for, read as parse reads an image:
# "nginx" and "docker.io/nginx" are "docker.io/nginx" (a Docker Hub namespace)
# and "docker.io/library/nginx" (the official image); "index.docker.io" is
# "docker.io"; trailing "/" are dropped. As ImageRef::is_under in the model.
prefix_names(prefix) := names if {
	parts := split(trim_right(prefix, "/"), "/")
	n := count(parts)
	qualified := true in {contains(parts[0], "."), contains(parts[0], ":"), parts[0] == "localhost"}
	host := lower(parts[0])
	registry := {true: object.get({"index.docker.io": "docker.io"}, host, host), false: "docker.io"}[qualified]
	rest := {true: array.slice(parts, 1, n), false: parts}[qualified]
	official := [registry, count(rest)] == ["docker.io", 1]
	names := {concat("/", array.concat([registry], rest))} | {true: {concat("/", [registry, "library", concat("", rest)])}, false: set()}[official]
}

# Whether name (as parse names it) is one of the prefixes or lies below one.
# With a "/" after both, "is or lies below" is "starts with".
under_any(name, prefixes) if {
	strings.any_prefix_match(concat("", [name, "/"]), [concat("", [full, "/"]) | some prefix in prefixes; some full in prefix_names(prefix)])
}
