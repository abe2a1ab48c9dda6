# Debian packages, each checked by a file that proves it installed: `need FILE PACKAGE` for each, then
# `install_needed`. Sourced by the README's two commands (./run and .ci/test), which install what is missing.
needed=()

need() {
  [ -e "$1" ] || needed+=("$2")
}

install_needed() {
  ((${#needed[@]})) || return 0
  echo "installing Debian packages: ${needed[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${needed[@]}"
  needed=()
}
