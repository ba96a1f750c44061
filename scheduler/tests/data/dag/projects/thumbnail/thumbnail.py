print("thumbnail")
