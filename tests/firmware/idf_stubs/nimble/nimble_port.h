#pragma once
#include "idf_api.h"
