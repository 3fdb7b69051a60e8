return {
  path = "/c/:b",
}
