"""The admin site's names: the product, not "Django administration".

Each app registers its own models in its admin.py; this module only names the shared site (it is
imported by the admin's autodiscovery like any app's admin module).
"""

from django.contrib import admin

PRODUCT_NAME = "LLM gateway"

admin.site.site_header = f"{PRODUCT_NAME} administration"
admin.site.site_title = f"{PRODUCT_NAME} admin"
admin.site.index_title = "Users, keys, providers and usage"
