"""The doors to the outside: AWS, SSH, keys, templates, the local files and the lock."""
