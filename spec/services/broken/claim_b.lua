return {
  path = "/claimed",
}
