return {
  path = "/c/:a",
}
